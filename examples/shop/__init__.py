"""The example shop: an order service on burrow and a real database (see ``app.py``)."""
