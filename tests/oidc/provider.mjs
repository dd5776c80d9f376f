// A real OpenID Connect provider for Terrace's tests: `oidc-provider` with three users and
// their groups (users.json, a `groups` claim), one confidential client `terrace` that must use
// PKCE (S256), and its development login and consent pages. Users may be moved between groups
// while it runs: POST /test/users/{id}/groups with a JSON array.
//
//   PORT (default 4010)  OIDC_USERS (default ./users.json)
import fs from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 4010);
const issuer = `http://127.0.0.1:${port}`;
const usersFile = process.env.OIDC_USERS || new URL('./users.json', import.meta.url);
const users = JSON.parse(fs.readFileSync(usersFile, 'utf8'));

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'terrace',
    client_secret: 'terrace-test-secret',
    redirect_uris: ['http://127.0.0.1/oauth/sso/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Claims asked for by scope go into the ID token itself (Terrace reads no userinfo).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          email: user.email,
          email_verified: true,
          groups: user.groups,
        };
      },
    };
  },
});

// Terrace's callback, on any loopback port, over http or https (the tests' servers pick
// their ports); every other redirect URI is refused as usual.
const allowed = provider.Client.prototype.redirectUriAllowed;
provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
  try {
    const url = new URL(value);
    if (['127.0.0.1', 'localhost'].includes(url.hostname) && url.pathname === '/oauth/sso/callback'
      && !url.search && !url.hash) {
      return true;
    }
  } catch { /* not a URL */ }
  return allowed.call(this, value);
};

// Test hook: change a user's groups (the IdP side of "removed from a group").
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/test\/users\/([^/]+)\/groups$/);
  if (match && ctx.method === 'POST') {
    let body = '';
    for await (const chunk of ctx.req) body += chunk;
    const user = users[match[1]];
    if (!user) { ctx.status = 404; return; }
    user.groups = JSON.parse(body);
    ctx.status = 204;
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
