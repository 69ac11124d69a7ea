// Preloaded into Azurite (node -r) by devkit/azurite.py: its in-memory queue GC deletes the
// extents of consumed messages in one pass instead of one at a time.
//
// Why: every queue message is an extent, and Azurite's queue GC (every 60 s) deletes the
// unreferenced ones one by one, each a Loki findAndRemove that rebuilds the collection's
// binary index: quadratic, and it never yields.  Measured on a 2-core machine (Azurite
// 3.37.0, --inMemoryPersistence): 1,565 extents took 3,069 ms, during which Azurite answered
// no request at all, so every throughput and latency benchmark longer than a minute counted a
// 3 s storage stall Azure Storage does not have.  Deleting them in one pass takes a few
// milliseconds.  Behaviour is otherwise unchanged (the same extents go, the same count is
// returned).  If Azurite's internals ever differ from what this expects, the original method
// is kept and one line says so.

"use strict";

const PATCHED = "MemoryExtentStore.deleteExtents (one pass)";

function patch() {
  const module = require("azurite/dist/src/common/persistence/MemoryExtentStore.js");
  const Store = module && module.default;
  if (!Store || typeof Store.prototype.deleteExtents !== "function") {
    return "MemoryExtentStore not found";
  }
  const original = Store.prototype.deleteExtents;
  Store.prototype.deleteExtents = async function deleteExtents(extents) {
    const metadata = this.metadataStore;
    const collection =
      metadata && metadata.db && typeof metadata.db.getCollection === "function"
        ? metadata.db.getCollection(metadata.EXTENTS_COLLECTION)
        : null;
    if (!collection || typeof collection.removeWhere !== "function" || !this.chunks) {
      return original.call(this, extents);
    }
    const ids = new Set(extents);
    for (const id of ids) {
      if (this.chunks.get(this.categoryName, id)) {
        this.chunks.delete(this.categoryName, id);
      }
    }
    collection.removeWhere((doc) => ids.has(doc.id));
    return ids.size;
  };
  return null;
}

let problem;
try {
  problem = patch();
} catch (err) {
  problem = String(err && err.message ? err.message : err);
}
if (problem) {
  console.log(`devkit: Azurite left as it is (${PATCHED} not applied: ${problem})`);
}
