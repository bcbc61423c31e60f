"""lockcheck: checks that every requirement in /src/requirements.txt is
pinned to exactly one version (`name==1.2.3`), so installs are reproducible.

Each unpinned line becomes an annotation at its line, and the stage fails;
/out/lockcheck.txt lists what was checked.
"""

import re

import cairn_stage as cairn
import wit_world

PATH = "/src/requirements.txt"
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?==[A-Za-z0-9.+!_-]+$")


class WitWorld(wit_world.WitWorld):
    def run(self, invocation):
        pinned, unpinned = [], []
        with open(PATH) as requirements:
            lines = requirements.read().splitlines()
        for number, line in enumerate(lines, start=1):
            requirement = line.split("#", 1)[0].split(";", 1)[0].strip()
            requirement = requirement.split(" --hash", 1)[0].strip()
            if not requirement:
                continue
            if PINNED.match(requirement):
                pinned.append(requirement)
            else:
                unpinned.append(requirement)
                cairn.annotate(PATH, number, f"`{requirement}` is not pinned to one version (use name==version)",
                               severity=cairn.Level.ERROR)
            cairn.progress(number, len(lines))
        with open("/out/lockcheck.txt", "w") as report:
            report.writelines(f"pinned    {requirement}\n" for requirement in pinned)
            report.writelines(f"UNPINNED  {requirement}\n" for requirement in unpinned)
        if unpinned:
            raise cairn.fail(f"{len(unpinned)} of {len(pinned) + len(unpinned)} requirements are not pinned")
        cairn.info(f"all {len(pinned)} requirements are pinned")
        return cairn.outcome(f"{len(pinned)} requirements pinned", packages=len(pinned))
