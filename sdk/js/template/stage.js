// {{name}}: a cairn stage in JavaScript, built with componentize-js by
// `cairn stage build .`. `./cairn.js` (cairn's sdk/js, supplied by the build)
// wraps the host and the sandbox's files.
import { info, listFiles, outcome, writeFile } from './cairn.js';

export function run(invocation) {
  const files = listFiles('/src');
  writeFile('/out/files.txt', files.map((file) => `${file}\n`).join(''));
  info(`hello from ${invocation.stage}, written in JavaScript: ${files.length} files in /src`);
  return outcome(`${files.length} files in /src`, { files: files.length });
}
