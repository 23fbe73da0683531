"""The shop's HTTP routes, served by ``burrow api``/``burrow up`` next to burrow's own API
(``app.include_router``): place an order, read it, rebuild it from its events, manage the
catalogue, and a report for the demo and the load test.

Answers use burrow's envelope (``{"code", "message", "data"}``), so errors (a 422, a 503
when the broker is down) look the same as burrow's.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from burrow.api.envelope import Envelope
from examples.shop import service
from examples.shop.db import Database, Order, Product


class PlaceOrder(BaseModel):
    sku: str = Field(min_length=1, max_length=64, examples=["tea"])
    qty: int = Field(default=1, ge=1, le=1000)
    phone: str = Field(pattern=r"^\+?[0-9 ]{6,20}$", examples=["+44 7700 900123"])


class OrderOut(BaseModel):
    id: str
    sku: str
    qty: int
    phone: str
    amount_cents: int
    status: str
    reason: str | None
    created_at: float
    updated_at: float


class ProductIn(BaseModel):
    name: str = Field(default="", max_length=200)
    price_cents: int = Field(ge=0)
    stock: int = Field(ge=0)
    broken: bool = False


class ProductOut(BaseModel):
    sku: str
    name: str
    price_cents: int
    stock: int
    sold: int
    initial_stock: int
    broken: bool


class History(BaseModel):
    order_id: str
    rebuilt: service.OrderState | None
    events: list[service.OrderEvent]


def _order(order: Order) -> OrderOut:
    return OrderOut.model_validate(order, from_attributes=True)


def _product(product: Product) -> ProductOut:
    return ProductOut.model_validate(product, from_attributes=True)


def ok(data: Any, code: int = 200, message: str = "ok") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def make_router(db: Database, emit: Callable[[service.OrderEvent], Awaitable[None]]) -> APIRouter:
    """The routes on ``db``; ``emit`` publishes an order event (burrow's ``app.publish``)."""
    router = APIRouter(tags=["shop"])

    @router.post("/orders", status_code=201, response_model=Envelope[OrderOut])
    async def place_order(body: PlaceOrder) -> dict[str, Any]:
        """Write the order (``pending``) and publish ``order.created``; inventory, fulfilment,
        notification and audit follow asynchronously. Poll ``GET /orders/{id}``."""
        try:
            order = await service.place_order(db, uuid.uuid4().hex, body.sku, body.qty, body.phone)
        except service.UnknownProduct:
            raise HTTPException(404, f"no product {body.sku!r} (see GET /products)") from None
        # Published after the commit. If the publish fails the client gets the error (503)
        # and the order stays pending: the shop's sweeper publishes it again (app.py).
        await emit(service.event_of(order, "created"))
        return ok(_order(order), 201, "created")

    @router.get("/orders/{order_id}", response_model=Envelope[OrderOut])
    async def get_order(order_id: str) -> dict[str, Any]:
        """The order as it is now (the write model)."""
        order = await service.get_order(db, order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        return ok(_order(order))

    @router.get("/orders/{order_id}/history", response_model=Envelope[History])
    async def order_history(order_id: str) -> dict[str, Any]:
        """The order's events from the audit trail, and its state rebuilt from them alone."""
        events = await service.order_events(db, order_id)
        if not events and await service.get_order(db, order_id) is None:
            raise HTTPException(404, f"no order {order_id}")
        rebuilt = service.rebuild(events)
        return ok(History(order_id=order_id, rebuilt=rebuilt, events=events))

    @router.get("/products", response_model=Envelope[list[ProductOut]])
    async def list_products() -> dict[str, Any]:
        """The catalogue with each product's stock."""
        return ok([_product(p) for p in await service.products(db)])

    @router.put("/products/{sku}", response_model=Envelope[ProductOut])
    async def put_product(sku: str, body: ProductIn) -> dict[str, Any]:
        """Create or reset a product; ``stock`` becomes its initial stock. ``broken: true``
        makes every order of it fail at the warehouse (and be compensated)."""
        product = await service.set_product(
            db, sku, body.name or sku, body.price_cents, body.stock, body.broken
        )
        return ok(_product(product))

    @router.get("/shop/report", response_model=Envelope[dict[str, Any]])
    async def shop_report(since: float = 0.0) -> dict[str, Any]:
        """Orders by status, SMS sent, payments, refunds and compensations (of the orders
        created since ``since``, Unix time), and every product's stock check
        (``stock + sold == initial_stock``)."""
        return ok(await service.report(db, since))

    return router
