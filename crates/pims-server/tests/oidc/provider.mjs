// The OpenID Connect provider of the PIMS tests: the certified `oidc-provider` package on a
// loopback port, with a small user store, its own login page, RS256 and ES256 keys, JWT access
// tokens for the PIMS API, and key rotation on request.
//
//   node provider.mjs <port> <users.json>
//
// users.json: {"alice": {"password": "...", "groups": ["..."]}, ...}. Clients (all public
// redirects go to loopback): `app` (the mobile app; access tokens for the resource
// `https://pims.test/rs256` or `/es256`, audience `pims`, or `https://other.test`, audience
// `other`) and `console` (the helpdesk console; secret `console-secret`, redirect given by
// the CONSOLE_REDIRECT environment variable).
//
// Standard input takes commands, each answered by one line on standard output:
//   rotate  -> new RS256 and ES256 keys sign from now on; the old ones stay published
//   retire  -> only the newest keys stay published
// "ready <issuer>" is printed once listening.

import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const users = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
const consoleRedirect = process.env.CONSOLE_REDIRECT ?? 'http://127.0.0.1:1/console/callback';

function newKey(kind) {
  const { privateKey } =
    kind === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: `${kind}-${randomUUID()}`, alg: kind, use: 'sig' };
}

// Newest first: the provider signs with the first key of each algorithm.
let keys = [newKey('RS256'), newKey('ES256')];
const accessTokenTtl = 300;

const resources = {
  'https://pims.test/rs256': { audience: 'pims', alg: 'RS256' },
  'https://pims.test/es256': { audience: 'pims', alg: 'ES256' },
  'https://other.test': { audience: 'other', alg: 'ES256' },
};

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function build() {
  return new Provider(issuer, {
    clients: [
      {
        client_id: 'app',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/app-callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
      {
        client_id: 'console',
        client_secret: 'console-secret',
        redirect_uris: [consoleRedirect],
        post_logout_redirect_uris: [consoleRedirect.replace(/callback$/, '')],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    jwks: { keys },
    findAccount: async (ctx, id) =>
      users[id] && {
        accountId: id,
        claims: async () => ({ sub: id, groups: users[id].groups ?? [], name: users[id].name }),
      },
    claims: { openid: ['sub'], groups: ['groups'], profile: ['name'] },
    scopes: ['openid', 'groups', 'profile'],
    // Claims of the scopes asked for go into the ID token, where the console reads them.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: { AccessToken: () => accessTokenTtl, IdToken: 300, Interaction: 600, Session: 3600, Grant: 3600 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const r = resources[indicator];
          if (!r) throw new Error(`unknown resource ${indicator}`);
          return { scope: 'pims', audience: r.audience, accessTokenFormat: 'jwt', accessTokenTTL: accessTokenTtl, jwt: { sign: { alg: r.alg } } };
        },
      },
    },
    cookies: { keys: ['pims-test-provider-cookie-key'] },
  });
}

let provider = build();

function loginPage(uid, message) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in - Test IdP</title></head>
<body><h1>Test identity provider</h1>${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="login">User name</label> <input id="login" name="login" autofocus>
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit" id="submit">Sign in</button></form></body></html>`;
}

async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return new URLSearchParams(data);
}

async function interaction(req, res, uid, login) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (details.prompt.name === 'login') {
    if (!login) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(uid));
    }
    const form = await body(req);
    const user = users[form.get('login')];
    if (!user || user.password !== form.get('password')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(uid, 'Wrong user name or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, { mergeWithLastSubmission: false });
  }
  // Consent: the test clients are first-party, so everything asked for is granted.
  const asked = details.prompt.details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (asked.missingOIDCScope) grant.addOIDCScope(asked.missingOIDCScope.join(' '));
  if (asked.missingOIDCClaims) grant.addOIDCClaims(asked.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(asked.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const server = http.createServer(async (req, res) => {
  const m = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return provider.callback()(req, res);
  try {
    await interaction(req, res, m[1], Boolean(m[2]) && req.method === 'POST');
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e));
  }
});

server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim();
  if (command === 'rotate') {
    keys = [newKey('RS256'), newKey('ES256'), ...keys];
  } else if (command === 'retire') {
    keys = keys.slice(0, 2);
  } else {
    return console.log(`unknown ${command}`);
  }
  provider = build();
  console.log(`${command}d`);
});
process.stdin.on('end', () => process.exit(0));
