"""Sync Center: the web console for administrators and for each user, served by the function
app itself (``routes.bp``).  See docs/console.md."""
