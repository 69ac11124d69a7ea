"""Field maps between Workbooks records, canonical field dicts and Graph wire JSON (pure).

A *canonical* dict is the common language of the sync: plain JSON values (str, bool, list of
str) keyed by field names shared by both sides.  The reconciler compares and merges canonical
dicts; link snapshots store them.  Each mapper is a pair of total functions, so the same item
read twice always gives the same canonical dict (no spurious changes, no echo writes).
"""
