from __future__ import annotations

from typing import Any

from flask import Response

from app.api import protected_blueprint
from app.schemas.landscape import ExportQuerySchema, InventorySchema, LandscapeSchema
from app.services import landscape as service

bp = protected_blueprint("landscape", __name__, "The landscape map, risk ranking and inventory")


@bp.get("/landscape")
@bp.response(200, LandscapeSchema)
def get_landscape() -> dict[str, Any]:
    """Systems (nodes), live flows (edges, health over the last hour) and the risk ranking."""
    return service.landscape()


@bp.get("/landscape/export")
@bp.arguments(ExportQuerySchema, location="query")
@bp.response(200, InventorySchema)
@bp.alt_response(200, content_type="text/csv", description="format=csv", success=True)
def export_inventory(args: dict[str, Any]) -> Any:
    """The inventory: JSON with systems and integrations, or one CSV table (``table``)."""
    if args["format"] == "csv":
        table = args["table"]
        return Response(
            service.inventory_csv(table),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="flowgate-{table}.csv"'},
        )
    return service.inventory()
