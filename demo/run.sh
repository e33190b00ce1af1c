#!/bin/sh
# The whole story against a throw-away emulator (make demo runs this under `lsqsync emulator
# run`, which sets LSQ_HOST and the demo keys): validate, test, plan, apply, plan again, a person's
# edit in the CRM shows up as drift, and a run is rolled back.
set -eu
step() { printf '\n== %s\n' "$*"; }
# Each demo has a new emulator, so it starts with a new state file too.
rm -rf .lsqsync/demo .lsqsync/state.db && mkdir -p .lsqsync/demo
step "lsqsync whoami"; lsqsync whoami
step "lsqsync opportunities list --type 12003 --limit 5"
lsqsync opportunities list --type 12003 --limit 5
step "lsqsync validate"; lsqsync validate
step "lsqsync test (offline, against the types snapshot in types/)"; lsqsync test
step "lsqsync plan --out .lsqsync/demo/plan.json"
lsqsync plan --out .lsqsync/demo/plan.json --max-details 3
step "lsqsync apply .lsqsync/demo/plan.json"; lsqsync apply .lsqsync/demo/plan.json
step "lsqsync plan (again)"; lsqsync plan --max-details 0 | tail -n 1
step "a person edits one of those fields in LeadSquared"
# In LeadSquared's UI, not through the API: the emulator's admin surface, which (like a person's
# edit) does not count against the account's rate limit.
python - <<'PY'
import json, os, requests
change = json.load(open(".lsqsync/demo/plan.json"))["changes"][0]
field = change["fields"][0]["field"]
requests.post(
    os.environ["LSQ_HOST"] + "/_emulator/edits",
    json=[{"ProspectOpportunityId": change["id"], "OpportunityEventCode": change["opportunity_type"],
           "Fields": [{"SchemaName": field, "Value": "edited by hand"}]}],
    timeout=10,
).raise_for_status()
print(f"{change['id']} {field} = 'edited by hand'")
PY
step "lsqsync drift"; lsqsync drift || true
run=$(lsqsync state runs --format json | python -c "import json,sys; print(json.load(sys.stdin)['runs'][-1]['id'])")
step "lsqsync rollback $run --out .lsqsync/demo/rollback.json"
lsqsync rollback "$run" --out .lsqsync/demo/rollback.json --max-details 2
step "lsqsync apply .lsqsync/demo/rollback.json"; lsqsync apply .lsqsync/demo/rollback.json
step "lsqsync drift (the hand edit is still there: rollback never clobbers it)"
lsqsync drift || true
