// An OpenID provider for the gateway's sign-in tests: panva's oidc-provider (a certified
// implementation) over HTTPS on a loopback port, with one confidential client that must use
// PKCE, accounts whose claims carry roles, and a minimal login page of its own.
//
// Usage: node provider.js CONFIG.json, where the file holds
//   { "issuer": "https://localhost:PORT", "port": PORT, "cert_file": "...", "key_file": "...",
//     "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] },
//     "accounts": { "LOGIN": { "password": "...", "claims": { "roles": ["reviewer"] } } },
//     "publish_other_keys": false }
// With `publish_other_keys`, the key set it publishes is not the one it signs with (a
// provider whose ID tokens must not verify). It prints `listening` once it takes requests.

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function rsaKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

const signing = rsaKey('signing-key');

const provider = new Provider(config.issuer, {
  clients: [{
    ...config.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  jwks: { keys: [signing] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], profile: ['name'], roles: ['roles', 'institution'] },
  // The claims of the scopes granted go into the ID token too (the gateway reads roles there).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = config.accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, problem) {
  res.statusCode = problem ? 401 : 200;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><main><h1>Test identity provider</h1>
${problem ? `<p role="alert">${escape(problem)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<p><label for="login">Login</label> <input id="login" name="login" autocomplete="username"></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password"></p>
<p><button id="submit" type="submit">Sign in</button></p>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort">
<p><button id="cancel" type="submit">Cancel</button></p>
</form></main></body></html>`);
}

async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, action) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') return loginPage(res, details.uid);
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  const f = await form(req);
  const login = f.get('login') || '';
  const account = Object.hasOwn(config.accounts, login) ? config.accounts[login] : undefined;
  if (!account || account.password !== f.get('password')) {
    return loginPage(res, details.uid, 'Unknown login or wrong password.');
  }
  // A first-party client: what it asks is granted without a consent page.
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, {
    login: { accountId: login },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const otherKeys = config.publish_other_keys
  ? { keys: [(({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use }))(rsaKey('signing-key'))] }
  : null;
const handle = provider.callback();

const server = https.createServer({
  cert: fs.readFileSync(config.cert_file),
  key: fs.readFileSync(config.key_file),
}, async (req, res) => {
  const url = new URL(req.url, config.issuer);
  const parts = url.pathname.split('/');
  try {
    if (parts[1] === 'interaction' && parts[2]) return await interaction(req, res, parts[3]);
    if (otherKeys && url.pathname === '/jwks') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(otherKeys));
    }
    return handle(req, res);
  } catch (e) {
    res.statusCode = 400;
    res.end(`interaction failed: ${e.message}`);
  }
});

server.listen(config.port, '127.0.0.1', () => console.log('listening'));
