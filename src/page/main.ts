/** The page's entry: `/` lists webhooks, `/inspect/<id>` inspects one. */
import { home } from './home.js';
import { inspector } from './inspector.js';

const root = document.getElementById('app')!;
const match = /^\/inspect\/([^/]+)\/?$/.exec(location.pathname);
if (match) void inspector(root, decodeURIComponent(match[1]!));
else void home(root);
