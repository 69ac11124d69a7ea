"""The Workbooks edge: the only code that talks to Workbooks CRM (aiohttp)."""

from .client import LoginInfo, WorkbooksClient
from .config import ClientConfig, WorkbooksIdentity
from .emails import EmailLink
from .queries import AddressMatch, resolve_addresses
from .reads import Watermark, changed_since, iter_records
from .wire import Cond, all_of, any_of
from .writes import WriteOp, WriteResult, write_batch

__all__ = [
    "AddressMatch",
    "ClientConfig",
    "Cond",
    "EmailLink",
    "LoginInfo",
    "Watermark",
    "WorkbooksClient",
    "WorkbooksIdentity",
    "WriteOp",
    "WriteResult",
    "all_of",
    "any_of",
    "changed_since",
    "iter_records",
    "resolve_addresses",
    "write_batch",
]
