#!/usr/bin/env bash
# Retakes the README's pictures of the web console (docs/console-tenant.png and
# docs/console-operator.png): the console's browser tests run against a real gateway on the
# demo cloud and leave a screenshot of each view where CONSOLE_SCREENSHOTS_DIR says.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked
CONSOLE_SCREENSHOTS_DIR="$PWD/docs" cargo nextest run --locked -E 'binary(console)'
ls -l docs/console-tenant.png docs/console-operator.png
