"""Server-side sync between Microsoft 365 Outlook and Workbooks CRM."""

__version__ = "0.1.0"
