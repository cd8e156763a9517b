#!/usr/bin/env bash
# Regenerates the fuzzers' seed corpus in tests/fuzz/corpus/ from the
# readable seeds in tests/fuzz/seeds/ (text-format requests, and for the
# streaming uploads whole streams as tests/fuzz/fuzz_streams.proto words
# them, encoded with protoc) plus a few raw inputs for the graph validator. Inputs the fuzzers
# found that crashed go into the corpus folders by hand, with a name saying
# what they caught, and are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=tests/fuzz/seeds
corpus=tests/fuzz/corpus
encode() {  # <message> <textproto> <out>
  protoc --proto_path=proto --encode="engram.similarity.v1.$1" \
    proto/engram/similarity/v1/similarity.proto < "$2" > "$3"
}
encode_stream() {  # <message> <textproto> <out>
  protoc --proto_path=. --proto_path=proto --encode="engram.fuzz.$1" \
    tests/fuzz/fuzz_streams.proto < "$2" > "$3"
}
mkdir -p "$corpus/upload_collection" "$corpus/put_graph" \
  "$corpus/search_collection"
for f in "$seeds"/cosine_*.textproto; do
  encode BatchCosineRequest "$f" "$corpus/batch_cosine/seed-$(basename "$f" .textproto)"
done
for f in "$seeds"/spread_*.textproto; do
  encode SpreadRequest "$f" "$corpus/spread/seed-$(basename "$f" .textproto)"
done
for f in "$seeds"/search_*.textproto; do
  encode SearchCollectionRequest "$f" \
    "$corpus/search_collection/seed-$(basename "$f" .textproto)"
done
for f in "$seeds"/upload_*.textproto; do
  encode_stream UploadCollectionInput "$f" \
    "$corpus/upload_collection/seed-$(basename "$f" .textproto)"
done
for f in "$seeds"/graph_*.textproto; do
  encode_stream PutGraphInput "$f" \
    "$corpus/put_graph/seed-$(basename "$f" .textproto)"
done
python3 - "$corpus/graph_validator" <<'PY'
import struct, sys
out = sys.argv[1]
def write(name, num_nodes, offsets, targets, weights, seeds, weight_delta=1):
    header = bytes([num_nodes, len(offsets), len(targets), weight_delta])
    body = struct.pack(f"<{len(offsets)}I", *offsets)
    body += struct.pack(f"<{len(targets)}I", *targets)
    body += struct.pack(f"<{len(weights)}f", *weights)
    body += struct.pack("<2I", *seeds)
    open(f"{out}/seed-{name}", "wb").write(header + body)
write("chain", 4, [0, 1, 2, 3, 3], [1, 2, 3], [1.0, 1.0, 1.0], [0, 1])
write("diamond", 4, [0, 2, 3, 4, 4], [1, 2, 3, 3], [0.5, 0.5, 1.0, 1.0], [0, 0])
write("self_loops", 2, [0, 2, 3], [0, 1, 1], [1.0, 0.0, 0.25], [1, 0])
PY
echo "corpus: $(find "$corpus" -type f | wc -l) files"
