"""Azure Functions entry point. Thin by design: each blueprint parses its trigger and calls
one engine function. See sync/blueprints/ for the functions and README.md for the picture."""

import azure.functions as func

from sync.blueprints import admin, emails, timers, webhooks, workbooks_hooks, worker
from sync.console import routes as console
from sync.log_levels import configure_logging

# SYNC_LOG_LEVEL in Azure too; the SDKs' per-request logging stays quiet; run fields on every
# record, and metrics and logs to Application Insights when its connection string is set.
configure_logging(telemetry=True)
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(webhooks.bp)
app.register_functions(timers.bp)
app.register_functions(worker.bp)
app.register_functions(admin.bp)
app.register_functions(emails.bp)
app.register_functions(console.bp)
app.register_functions(workbooks_hooks.bp)
