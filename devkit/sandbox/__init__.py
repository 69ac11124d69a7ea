"""Local stand-ins for the external systems (Graph, Workbooks), faithful to their protocols."""
