"""{{name}}: a cairn stage in Python, built with componentize-py by `cairn stage build .`.

`cairn_stage` (cairn's sdk/python, supplied by the build) wraps the host;
plain `open()` reaches /src, /in/<stage>, /out and /tmp.
"""

import cairn_stage as cairn
import wit_world


class WitWorld(wit_world.WitWorld):
    def run(self, invocation):
        names = cairn.files("/src")
        with open("/out/files.txt", "w") as out:
            out.writelines(f"{name}\n" for name in names)
        cairn.info(f"hello from {invocation.stage}, written in Python: {len(names)} files in /src")
        return cairn.outcome(f"{len(names)} files in /src", files=len(names))
