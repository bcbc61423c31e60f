// changelog: renders CHANGELOG.md from conventional commit messages
// (`type(scope): message`, one per line in /src/commits.txt), grouped into
// features, fixes and other changes. `with.version` titles the release.
import { annotate, config, info, outcome, readText, writeFile } from './cairn.js';

const SECTIONS = [
  ['feat', 'Features'],
  ['fix', 'Fixes'],
];

export function run(invocation) {
  const version = config(invocation).version ?? 'unreleased';
  const groups = new Map(SECTIONS.map(([type]) => [type, []]));
  const other = [];
  const lines = readText('/src/commits.txt').split('\n');
  lines.forEach((line, index) => {
    if (!line.trim()) return;
    const match = /^(\w+)(?:\(([^)]+)\))?!?:\s*(.+)$/.exec(line.trim());
    if (!match) {
      annotate({ path: '/src/commits.txt', line: index + 1, severity: 'warn', message: 'not a conventional commit message' });
      other.push(line.trim());
      return;
    }
    const [, type, scope, message] = match;
    const entry = scope ? `**${scope}:** ${message}` : message;
    (groups.get(type) ?? other).push(entry);
  });

  let markdown = `# ${version}\n`;
  for (const [type, title] of SECTIONS) {
    const entries = groups.get(type);
    if (entries.length) markdown += `\n## ${title}\n\n${entries.map((entry) => `- ${entry}\n`).join('')}`;
  }
  if (other.length) markdown += `\n## Other changes\n\n${other.map((entry) => `- ${entry}\n`).join('')}`;
  writeFile('/out/CHANGELOG.md', markdown);

  const features = groups.get('feat').length;
  const fixes = groups.get('fix').length;
  const entries = features + fixes + other.length;
  info(`${entries} changes for ${version}: ${features} features, ${fixes} fixes`);
  return outcome(`${features} features, ${fixes} fixes, ${other.length} other`, { entries, features, fixes });
}
