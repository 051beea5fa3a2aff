// A real OpenID Provider (panva's oidc-provider) for Latch's end-to-end tests of keys fetched
// from the provider, of identity asserted by a trusted auth proxy, and of Latch's own sign-in.
//
//   node idp.js <port> <admin-port>
//
// The provider's issuer is http://127.0.0.1:<port>. Machine clients get JWT access tokens with
// the client_credentials grant (client "latch-m2m", secret "latch-m2m-secret", resource
// "urn:latch"); the token carries the extra claims "name" and "roles".
//
// The admin port lets a test change the provider while it runs:
//   POST /rotate?keep=1      restart the provider with a new signing key (keep=1: still publish
//                            the old one after it)
//   POST /down, POST /up     stop and resume listening on <port> (connections are refused)
//   POST /garbage?on=1       answer the key set with a body that is not JSON (on=0: stop)
//   POST /cache?value=...    the Cache-Control sent with the key set (empty: the provider's own)
//   GET  /fetches            {"jwks": n, "discovery": n}: key set and discovery requests seen
//   POST /sign               sign the JSON claims in the body with the newest key (RS256,
//                            its kid), as a provider-issued assertion: {"token": "..."}
//   POST /web-client         register the browser client "latch-web" (secret "latch-web-secret",
//                            authorization code flow) with the JSON body's redirect_uris, and
//                            its post_logout_redirect_uris (default: each redirect URI's
//                            origin followed by "/")
//   POST /id-token-claims    merge the JSON body's claims into every ID token the token
//                            endpoint answers from now on, re-signed with the newest key (a
//                            misbehaving provider; {} stops it)
//   POST /id-token-ttl?seconds=N   ID tokens issued from now on last N seconds (default 3600)
//   POST /refresh?allow=0    take the refresh_token grant away from "latch-web" (allow=1: give
//                            it back): its refresh tokens are then refused
//   GET  /fetches            also counts "refresh": refresh_token grants answered
//
// "latch-web" gets a refresh token at every sign-in (as Keycloak gives one without
// offline_access), and every refresh rotates it: a refresh token works once.
//
// Sign-in interactions are driven over HTTP: the provider sends the browser to
// GET /interaction/<uid>; GET /interaction/<uid>?login=<user> signs <user> in and grants the
// requested scopes, then redirects back to the authorization endpoint. Every user exists; their
// claims are name "User <user>", email "<user>@example.com" and roles ["editors"].
// It prints "listening <port> <admin-port>" once both ports accept connections.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const adminPort = Number(process.argv[3]);
if (!Number.isInteger(port) || !Number.isInteger(adminPort)) {
  console.error('usage: node idp.js <port> <admin-port>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

const state = {
  keys: [newKey()],
  garbage: false,
  cacheControl: '',
  fetches: { jwks: 0, discovery: 0, refresh: 0 },
  webRedirects: [],
  webLogoutRedirects: [],
  idTokenClaims: {},
  idTokenTtl: 3600,
  webRefresh: true,
};

function signJwt(claims) {
  const [key] = state.keys;
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${b64({ alg: 'RS256', typ: 'JWT', kid: key.kid })}.${b64(claims)}`;
  const signature = crypto.sign('sha256', Buffer.from(input), {
    key: crypto.createPrivateKey({ key, format: 'jwk' }),
  });
  return `${input}.${signature.toString('base64url')}`;
}

function makeProvider() {
  const web = state.webRedirects.length === 0 ? [] : [
    {
      client_id: 'latch-web',
      client_secret: 'latch-web-secret',
      grant_types: state.webRefresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
      response_types: ['code'],
      redirect_uris: state.webRedirects,
      post_logout_redirect_uris: state.webLogoutRedirects,
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ];
  const provider = new Provider(issuer, {
    clients: [
      ...web,
      {
        client_id: 'latch-m2m',
        client_secret: 'latch-m2m-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys: state.keys },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, name: `User ${id}`, email: `${id}@example.com`, roles: ['editors'] }),
    }),
    claims: { openid: ['sub'], profile: ['name', 'roles'], email: ['email'] },
    // The profile claims go into the ID token itself, as Latch reads them from there.
    conformIdTokenClaims: false,
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        // With a valid id_token_hint (the end-session endpoint refuses an invalid one before
        // this runs) the sign-out is confirmed at once, as Keycloak does; without one the
        // provider asks, as its default page does.
        logoutSource: async (ctx, form) => {
          const hinted = Boolean(ctx.oidc.params.id_token_hint);
          const confirm = hinted
            ? `<script>const f = document.getElementById('op.logoutForm');
                 const yes = document.createElement('input');
                 yes.type = 'hidden'; yes.name = 'logout'; yes.value = 'yes';
                 f.appendChild(yes); f.submit();</script>`
            : `<p>Do you want to sign out?</p>
               <button type="submit" form="op.logoutForm" name="logout" value="yes">Yes</button>`;
          ctx.body = `<!DOCTYPE html><html><head><title>Sign out</title></head><body
            data-hinted="${hinted}">${form}${confirm}</body></html>`;
        },
      },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:latch',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: 'urn:latch',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: () => ({ name: 'Machine Client', roles: ['reader', 'robots'] }),
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    ttl: { IdToken: () => state.idTokenTtl },
  });
  provider.use(async (ctx, next) => {
    const interaction = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (interaction && ctx.method === 'GET') {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const accountId = ctx.query.login;
      if (!accountId) {
        ctx.status = 200;
        ctx.type = 'text/plain';
        ctx.body = `sign in: GET ${ctx.path}?login=<user> (${details.prompt.name})`;
        return;
      }
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      const to = await provider.interactionResult(
        ctx.req,
        ctx.res,
        { login: { accountId }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      ctx.status = 303;
      ctx.redirect(to);
      return;
    }
    if (ctx.path === '/jwks') state.fetches.jwks += 1;
    if (ctx.path === '/.well-known/openid-configuration') state.fetches.discovery += 1;
    if (ctx.path === '/jwks' && state.garbage) {
      ctx.status = 200;
      ctx.type = 'application/json';
      ctx.body = '{"keys": [ this is not json';
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.oidc?.params?.grant_type === 'refresh_token') {
      state.fetches.refresh += 1;
    }
    if (ctx.path === '/jwks' && state.cacheControl) ctx.set('cache-control', state.cacheControl);
    if (ctx.path === '/token' && Object.keys(state.idTokenClaims).length > 0) {
      const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : ctx.body;
      if (body && body.id_token) {
        const claims = JSON.parse(Buffer.from(body.id_token.split('.')[1], 'base64url'));
        ctx.body = { ...body, id_token: signJwt({ ...claims, ...state.idTokenClaims }) };
      }
    }
  });
  return provider;
}

let handler = makeProvider().callback();
const server = http.createServer((req, res) => handler(req, res));

function listen() {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function stop() {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const admin = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://admin');
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    if (req.method === 'POST' && url.pathname === '/rotate') {
      const fresh = newKey();
      state.keys = url.searchParams.get('keep') === '1' ? [fresh, ...state.keys] : [fresh];
      handler = makeProvider().callback();
      return reply(200, { kids: state.keys.map((k) => k.kid) });
    }
    if (req.method === 'POST' && url.pathname === '/down') {
      await stop();
      return reply(200, { listening: false });
    }
    if (req.method === 'POST' && url.pathname === '/up') {
      if (!server.listening) await listen();
      return reply(200, { listening: true });
    }
    if (req.method === 'POST' && url.pathname === '/garbage') {
      state.garbage = url.searchParams.get('on') === '1';
      return reply(200, { garbage: state.garbage });
    }
    if (req.method === 'POST' && url.pathname === '/cache') {
      state.cacheControl = url.searchParams.get('value') ?? '';
      return reply(200, { cacheControl: state.cacheControl });
    }
    if (req.method === 'GET' && url.pathname === '/fetches') return reply(200, state.fetches);
    if (req.method === 'POST' && url.pathname === '/id-token-ttl') {
      state.idTokenTtl = Number(url.searchParams.get('seconds') ?? 3600);
      return reply(200, { idTokenTtl: state.idTokenTtl });
    }
    if (req.method === 'POST' && url.pathname === '/refresh') {
      state.webRefresh = url.searchParams.get('allow') !== '0';
      handler = makeProvider().callback();
      return reply(200, { refresh: state.webRefresh });
    }
    if (req.method === 'POST' && (url.pathname === '/web-client' || url.pathname === '/id-token-claims')) {
      let text = '';
      for await (const chunk of req) text += chunk;
      const body = JSON.parse(text);
      if (url.pathname === '/web-client') {
        state.webRedirects = body.redirect_uris;
        state.webLogoutRedirects = body.post_logout_redirect_uris
          ?? [...new Set(body.redirect_uris.map((uri) => `${new URL(uri).origin}/`))];
        handler = makeProvider().callback();
      } else {
        state.idTokenClaims = body;
      }
      return reply(200, body);
    }
    if (req.method === 'POST' && url.pathname === '/sign') {
      let text = '';
      for await (const chunk of req) text += chunk;
      return reply(200, { token: signJwt(JSON.parse(text)) });
    }
    return reply(404, { error: 'no such admin endpoint' });
  } catch (error) {
    return reply(500, { error: String(error) });
  }
});

await listen();
await new Promise((resolve) => admin.listen(adminPort, '127.0.0.1', resolve));
console.log(`listening ${port} ${adminPort}`);
