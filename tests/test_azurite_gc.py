"""Azurite's queue GC, preloaded to delete consumed messages' extents in one pass
(``devkit/azurite_gc.js``): it is applied to the Azurite the project pins, and deletes exactly
what Azurite's own method deletes, without its 2 ms per extent that stalled Azurite 3 s a
minute under the throughput benchmark."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devkit import azurite

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ROOT / "devkit" / "azurite_gc.js"

# Builds one MemoryExtentStore as Azurite does (its Loki extent collection indexed on id, its
# in-memory chunk store), fills both with 2,000 extents, and lets the store's GC method delete
# 1,900 of them; prints what is left and how long the deletion took.
SCRIPT = r"""
const Loki = require("lokijs");
const Store = require("azurite/dist/src/common/persistence/MemoryExtentStore.js").default;
const { MemoryExtentChunkStore } = require("azurite/dist/src/common/persistence/MemoryExtentStore.js");
const NAME = "$EXTENTS_COLLECTION$";
(async () => {
  const db = new Loki("gc-test", { persistenceMethod: "memory" });
  const collection = db.addCollection(NAME, { indices: ["id"] });
  const chunks = new MemoryExtentChunkStore(undefined);
  const logger = { info() {}, debug() {}, verbose() {}, error() {}, warn() {} };
  const metadata = {
    db, EXTENTS_COLLECTION: NAME,
    async deleteExtent(id) { return collection.findAndRemove({ id }); },
  };
  const store = new Store("queue", chunks, metadata, logger, (e) => e);
  const ids = [];
  for (let i = 0; i < 2000; i++) {
    const id = `extent-${i}`;
    ids.push(id);
    collection.insert({ id, locationId: "memory", path: id, size: 3, lastModifiedInMS: 0 });
    chunks.set("queue", { id, chunks: [Buffer.from("abc")], count: 3 });
  }
  const doomed = ids.slice(0, 1900);
  const started = process.hrtime.bigint();
  const deleted = await store.deleteExtents(doomed);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const left = collection.find().map((d) => d.id).sort();
  const chunksLeft = ids.filter((id) => chunks.get("queue", id) !== undefined).sort();
  const patched = !/metadataStore\.deleteExtent\(/.test(Store.prototype.deleteExtents.toString());
  console.log(JSON.stringify({ deleted, left, chunksLeft, ms, patched, found: collection.find({ id: "extent-1950" }).length }));
})();
"""


def _run(preload: bool) -> dict[str, object]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    args = [node, *(["--require", str(PRELOAD)] if preload else []), "-e", SCRIPT]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert "left as it is" not in done.stdout, done.stdout
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_preload_deletes_what_azurite_deletes_in_one_pass() -> None:
    ours, theirs = _run(preload=True), _run(preload=False)
    assert (ours["patched"], theirs["patched"]) == (True, False)
    expected = sorted(f"extent-{i}" for i in range(1900, 2000))
    for result in (ours, theirs):
        assert result["deleted"] == 1900
        assert result["left"] == expected  # Loki's collection
        assert result["chunksLeft"] == expected  # the message bodies
        assert result["found"] == 1  # the id index still finds what is left
    print(f"1,900 extents deleted: {theirs['ms']:.0f} ms by Azurite, {ours['ms']:.1f} ms preloaded")
    assert float(str(ours["ms"])) < float(str(theirs["ms"]))


def test_azurite_is_started_with_the_preload() -> None:
    argv = azurite.command()
    assert argv[argv.index("--require") + 1] == str(PRELOAD)
    assert Path(argv[argv.index("--require") + 2]).name == "azurite.js"
