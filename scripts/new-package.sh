#!/usr/bin/env bash
# Creates an empty workspace package: scripts/new-package.sh NAME "description" [dep ...]
set -euo pipefail
name=$1; desc=$2; shift 2
dir=packages/$name
mkdir -p "$dir/src" "$dir/test"
deps=""; refs=""
for d in "$@"; do
  if [[ $d == @fleet/* ]]; then
    deps+="\"$d\": \"0.1.0\","; refs+="{ \"path\": \"../${d#@fleet/}\" },"
  fi
done
cat > "$dir/package.json" <<JSON
{
  "name": "@fleet/$name",
  "version": "0.1.0",
  "private": true,
  "description": "$desc",
  "type": "module",
  "exports": {
    ".": {
      "types": "./dist/index.d.ts",
      "source": "./src/index.ts",
      "default": "./dist/index.js"
    }
  },
  "dependencies": {${deps%,}}
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "rootDir": "src", "outDir": "dist" },
  "include": ["src"],
  "references": [${refs%,}]
}
JSON
[ -f "$dir/src/index.ts" ] || echo "export {};" > "$dir/src/index.ts"
