"""``streamstate check`` on a Valkey Cluster: every primary is read."""

from __future__ import annotations

import json

from streamstate.connection import client_from_url
from streamstate.server_check import check_server
from streamstate.testing.cluster import LocalCluster
from tests.cli.conftest import run_cli


def test_check_reads_every_primary(cluster: LocalCluster) -> None:
    client = client_from_url(cluster.url)
    try:
        nodes = client.get_primaries()
        names = [n.name for n in nodes]
        one = client.get_valkey_connection(nodes[1])
        before = one.config_get("stream-node-max-bytes")["stream-node-max-bytes"]
        one.config_set("stream-node-max-bytes", 256)  # one primary differs from the rest
        try:
            found = check_server(client)
        finally:
            one.config_set("stream-node-max-bytes", before)
    finally:
        client.close()
    assert len(names) == 3
    server = [f for f in found if f.topic == "server"]
    assert len(server) == 1 and server[0].node == "" and ", cluster," in server[0].message
    replication = [f for f in found if f.topic == "replication"]
    assert [(f.status, f.node) for f in replication] == [("ok", "")]  # each has a replica
    stream_nodes = {f.node: f.status for f in found if f.topic == "stream nodes"}
    # a finding of some primaries names them
    assert stream_nodes == {f"{names[0]}, {names[2]}": "note", names[1]: "ok"}
    doc = json.loads(run_cli("check", "--url", cluster.url, "--json").out)
    assert {f["topic"] for f in doc["findings"]} >= {"persistence", "eviction", "scripting"}
