#!/usr/bin/env python3
"""Writes schema-v4.sqlite: the schema v3 golden fixture migrated to schema v4 the way a v4
node did it (the V4 step of appliance/node/src/store/schema.rs at commit bcd5ebc, verbatim,
then schema_history and user_version), with two approvals recorded as v4's add_approval
wrote them (v4 approvals had no verdict). Run from this directory:

    python3 schema-v4.py
"""
import os
import re
import shutil
import sqlite3
import subprocess

OUT = "schema-v4.sqlite"
AT = 1_795_267_600_000  # a fixed "now" after the v3 fixture was written, ms
EXPIRES = 4_102_444_800_000  # 2100-01-01, ms: the approvals never expire in a test

schema = subprocess.run(
    ["git", "show", "bcd5ebc:appliance/node/src/store/schema.rs"],
    check=True, capture_output=True, text=True,
).stdout
v4 = re.search(r'const V4: &str = r#"(.*?)"#;', schema, re.S).group(1)

if os.path.exists(OUT):
    os.remove(OUT)
shutil.copy("schema-v3.sqlite", OUT)
conn = sqlite3.connect(OUT, isolation_level=None)
assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
approvals = "".join(
    f"INSERT INTO approvals (request_hash, approver, approval_request_id, expires_at,"
    f" signed_request, received_at) VALUES (x'{'07' * 32}', '{who}', '{rid}',"
    f" {EXPIRES}, CAST('{rid}' AS BLOB), {AT});\n"
    for who, rid in (("alice", "approve-alice"), ("bob", "approve-bob"))
)
# One transaction, as the node's migration runs.
conn.executescript(
    "BEGIN IMMEDIATE;\n" + v4
    + f"INSERT INTO schema_history (version, applied_at) VALUES (4, {AT});\n"
    + "PRAGMA user_version = 4;\n" + approvals + "COMMIT;\n"
)
conn.execute("PRAGMA journal_mode = DELETE")
conn.execute("VACUUM")
conn.close()
