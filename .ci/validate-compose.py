"""Checks docker-compose.yml: valid YAML, valid against the Compose
Specification's JSON schema, and the stack's own rules (healthchecks on every
long-running service, named volumes, both profiles present)."""
import json
import sys

import jsonschema
import yaml

compose_file, schema_file = sys.argv[1], sys.argv[2]
with open(compose_file) as f:
    compose = yaml.safe_load(f)
with open(schema_file) as f:
    schema = json.load(f)
jsonschema.validate(compose, schema)

services = compose["services"]
one_shot = {"bucket", "models", "arroyo-deploy"}
problems = []
for name, svc in services.items():
    if name not in one_shot and "healthcheck" not in svc:
        problems.append(f"{name}: no healthcheck")
    for volume in svc.get("volumes", []):
        source = volume.split(":")[0]
        if not source.startswith((".", "/")) and source not in compose.get("volumes", {}):
            problems.append(f"{name}: volume {source} is not declared")
profiles = {p for svc in services.values() for p in svc.get("profiles", [])}
if profiles != {"docstream", "arroyo"}:
    problems.append(f"profiles are {sorted(profiles)}, want arroyo and docstream")
for name in ["kafka", "minio", "ollama", "arroyo", "watch", "ingest-1", "ingest-2"]:
    if name not in services:
        problems.append(f"missing service {name}")
if problems:
    sys.exit("docker-compose.yml: " + "; ".join(problems))
print(f"docker-compose.yml: valid, {len(services)} services")
