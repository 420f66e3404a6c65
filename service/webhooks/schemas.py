"""The webhook body: `{"type", "timestamp", "data"}` (design §7)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from service.catalog.schemas import CatalogDocument
from service.interactions.schemas import INTERACTION_EXAMPLE, Interaction, Moment


class InteractionEvent(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "type": "interaction.completed",
                    "timestamp": "2026-11-26T09:22:00Z",
                    "data": INTERACTION_EXAMPLE,
                }
            ]
        },
    )

    type: Literal["interaction.completed", "interaction.updated"]
    timestamp: Moment = Field(description="When the platform produced this version.")
    data: Interaction


class CatalogEvent(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "type": "catalog.updated",
                    "timestamp": "2026-11-26T09:22:00Z",
                    "data": {"categories": [{"name": "Frustration"}]},
                }
            ]
        },
    )

    type: Literal["catalog.updated"]
    timestamp: Moment
    data: CatalogDocument


Event = Annotated[InteractionEvent | CatalogEvent, Field(discriminator="type")]
event_adapter: TypeAdapter[InteractionEvent | CatalogEvent] = TypeAdapter(Event)


class WebhookAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "accepted", "deliveries": 2},
                {"status": "duplicate", "deliveries": 0},
            ]
        }
    )

    status: Literal["accepted", "duplicate", "stale", "catalog_updated"] = Field(
        description="`duplicate`: this webhook-id or interaction was already stored; `stale`: "
        "an update older than the stored version. Both change nothing."
    )
    deliveries: int = Field(description="Deliveries this event created.")


REQUEST_BODY_MODELS: tuple[type[BaseModel], ...] = (InteractionEvent, CatalogEvent)


def request_body_schema() -> dict[str, Any]:
    """The body as documented in OpenAPI: the endpoint reads the raw bytes to verify them, so
    FastAPI cannot derive it; the models are added to the components by service.openapi."""
    refs = {
        "interaction.completed": "#/components/schemas/InteractionEvent",
        "interaction.updated": "#/components/schemas/InteractionEvent",
        "catalog.updated": "#/components/schemas/CatalogEvent",
    }
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [{"$ref": ref} for ref in sorted(set(refs.values()))],
                    "discriminator": {"propertyName": "type", "mapping": refs},
                }
            }
        },
    }
