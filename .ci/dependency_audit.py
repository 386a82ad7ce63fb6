"""CI: audit the installed dependencies with pip-audit (PyPI's vulnerability data).

A known vulnerability fails CI. When the data cannot be reached (no network, a mirror without PyPI's JSON API), the
audit says so and does not fail: the dependencies were not audited, and the message says which.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
    ran = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        dependencies = json.loads(ran.stdout)["dependencies"]
    except (ValueError, KeyError):
        print(f"dependency audit: pip-audit could not run, nothing audited:\n{ran.stderr.strip()}", file=sys.stderr)
        return 0
    vulnerable = [dependency for dependency in dependencies if dependency.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            print(f"{dependency['name']} {dependency.get('version', '')}: {vuln['id']} (fixed in {fixed})")
    if vulnerable:
        return 1
    skipped = [dependency["name"] for dependency in dependencies if dependency.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    if skipped:
        print(
            f"dependency audit: {len(skipped)} of {len(dependencies)} dependencies could not be audited (PyPI's "
            f"vulnerability data unreachable?): {', '.join(skipped[:10])}{'...' if len(skipped) > 10 else ''}",
            file=sys.stderr,
        )
    print(f"dependency audit: {audited} dependencies audited, no known vulnerability")
    return 0


if __name__ == "__main__":
    sys.exit(main())
