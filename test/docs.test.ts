import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = new URL('..', import.meta.url).pathname;
const docs = ['README.md', 'bench/README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

const links = suite('docs are self-contained');

links('every relative link in README.md and docs/*.md names a file inside the repository that exists', () => {
  for (const doc of docs) {
    const text = readFileSync(join(root, doc), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue;
      const file = resolve(root, dirname(doc), target!.split('#')[0]!);
      assert.ok(!relative(root, file).startsWith('..'), `${doc} links outside the repository: ${target}`);
      assert.ok(existsSync(file), `${doc} links to a missing file: ${target}`);
    }
  }
});

links('no doc points at CONTRACT.md, which is not part of the repository', () => {
  for (const doc of docs) assert.not.match(readFileSync(join(root, doc), 'utf8'), 'CONTRACT.md', doc);
});

links('LICENSE holds the MIT licence that package.json declares, for hooky contributors', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license: string };
  const license = readFileSync(join(root, 'LICENSE'), 'utf8');
  assert.is(pkg.license, 'MIT');
  assert.match(license, /^MIT License\n/);
  assert.match(license, /Copyright \(c\) \d{4} hooky contributors/);
});

links.run();
