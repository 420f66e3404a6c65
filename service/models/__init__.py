"""Every table, imported in one place so Alembic and relationships see them all."""

from service.models.audit_log import AuditLogEntry
from service.models.base import Base
from service.models.catalog import Catalog
from service.models.delivery import Delivery, DeliveryAttempt, DeliveryStatus
from service.models.integration import Integration, IntegrationHealth
from service.models.interaction import Interaction
from service.models.login_throttle import LoginThrottle
from service.models.organization import Organization
from service.models.qualtrics_connection import QualtricsConnection
from service.models.qualtrics_project import QualtricsProject
from service.models.trigger import Trigger
from service.models.user import Role, User
from service.models.webhook_receipt import WebhookReceipt
from service.models.webhook_secret import WebhookSecret

__all__ = [
    "AuditLogEntry",
    "Base",
    "Catalog",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "Integration",
    "IntegrationHealth",
    "Interaction",
    "LoginThrottle",
    "Organization",
    "QualtricsConnection",
    "QualtricsProject",
    "Role",
    "Trigger",
    "User",
    "WebhookReceipt",
    "WebhookSecret",
]
