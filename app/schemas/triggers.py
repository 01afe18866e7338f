from marshmallow import fields

from app.schemas.common import StrictSchema


class ManualRunSchema(StrictSchema):
    payload = fields.Raw(
        load_default=dict,
        metadata={
            "description": "The message, any JSON value (default {}); given to the "
            "flow's live version exactly as sent."
        },
    )
