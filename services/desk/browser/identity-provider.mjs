// A real OpenID provider for the desk's tests and local runs: the certified
// oidc-provider package, with one confidential client (the desk), PKCE
// required, and accounts whose claims carry the desk's roles and programs.
//
// Environment:
//   DESK_IDP_CLIENT_ID, DESK_IDP_CLIENT_SECRET  the desk's registration
//   DESK_IDP_REDIRECT_URI                       the desk's /signin/callback
//   DESK_IDP_ACCOUNTS  JSON: { "<roster id>": { "name", "roles": [], "programs": [], "locale" } }
//   DESK_IDP_PORT      where to listen on 127.0.0.1 (0: any free port)
//
// Prints one line of JSON when it listens: {"issuer": "http://127.0.0.1:<port>"}.
// Its login page (oidc-provider's development interactions) takes any
// password for a known account: it stands in for the hub's provider, it is
// not one.
import http from "node:http";
import crypto from "node:crypto";
import Provider from "oidc-provider";

const need = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`identity-provider: ${name} is required`);
    process.exit(2);
  }
  return value;
};

const clientId = need("DESK_IDP_CLIENT_ID");
const clientSecret = need("DESK_IDP_CLIENT_SECRET");
const redirectUri = need("DESK_IDP_REDIRECT_URI");
const accounts = JSON.parse(need("DESK_IDP_ACCOUNTS"));
const port = Number(process.env.DESK_IDP_PORT || 0);

const signingKey = {
  ...crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
  kid: crypto.randomUUID(),
  use: "sig",
  alg: "RS256",
};
const deskClaims = ["name", "preferred_username", "locale", "roles", "programs"];

const server = http.createServer();
server.listen(port, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ["sub"], profile: deskClaims },
    // The desk reads its claims from the ID token; it asks for no access token.
    conformIdTokenClaims: false,
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
    features: { devInteractions: { enabled: true } },
    findAccount: async (_ctx, id) => {
      const account = accounts[id];
      if (!account) {
        return undefined;
      }
      return {
        accountId: id,
        claims: async () => ({ sub: id, preferred_username: id, ...account }),
      };
    },
    // The desk is the hub's own application: no consent screen, as a hub's
    // provider is set up for its first-party apps.
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope("openid profile");
      grant.addOIDCClaims(deskClaims);
      await grant.save();
      return grant;
    },
  });
  server.on("request", provider.callback());
  console.log(JSON.stringify({ issuer }));
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
