import { request } from 'node:http';

/**
 * One HTTP exchange on a connection of its own. fetch keeps connections alive, and tests that
 * restart a server on the same port would otherwise still reach the old one.
 */
export function http(
  method: string,
  url: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
