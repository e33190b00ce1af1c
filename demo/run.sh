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
# In LeadSquared's screens, not through the API: `emulator edit` makes the edit as a sales user.
# shellcheck disable=SC2046 # the id and the field name, split on purpose
set -- $(python -c "import json; c = json.load(open('.lsqsync/demo/plan.json'))['changes'][0]
print(c['id'], c['fields'][0]['field'])")
lsqsync emulator edit "$1" "$2=edited by hand"
step "lsqsync drift"; lsqsync drift || true
run=$(lsqsync state runs --format json | python -c "import json,sys; print(json.load(sys.stdin)['runs'][-1]['id'])")
step "lsqsync rollback $run --out .lsqsync/demo/rollback.json"
lsqsync rollback "$run" --out .lsqsync/demo/rollback.json --max-details 2
step "lsqsync apply .lsqsync/demo/rollback.json"; lsqsync apply .lsqsync/demo/rollback.json
step "lsqsync drift (the hand edit is still there: rollback never clobbers it)"
lsqsync drift || true
step "lsqsync drift --accept --all (the hand edit is right: drift stops reporting it)"
lsqsync drift --accept --all
step "lsqsync drift"; lsqsync drift
