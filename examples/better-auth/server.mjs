// Better Auth as the authorization server of todo-ledger: the configuration the tests run.
//
//   npm ci && MCP_RESOURCE=http://127.0.0.1:8000/mcp node server.mjs
//
// Environment:
//   PORT          port on 127.0.0.1 (default 3000)
//   BASE_URL      the URL people and clients reach this server at (default http://127.0.0.1:$PORT)
//   MCP_RESOURCE  todo-ledger's /mcp URL, the same as its TODO_MCP_PUBLIC_URL
//   SSE_RESOURCE  todo-ledger's /sse URL (default: MCP_RESOURCE with /mcp replaced by /sse)
//   DATABASE_URL  postgres://... to keep users and clients; unset: in memory, gone on exit
//   BETTER_AUTH_SECRET  signs cookies and encrypts the signing keys (set your own in production)
//
// In production, replace the two pages below with your app's sign-in and consent screens: the
// consent page here approves every request without asking anyone.
import http from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { getAuthTables } from "better-auth/db";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins/jwt";
import { oauthProvider } from "@better-auth/oauth-provider";

const port = Number(process.env.PORT ?? 3000);
const baseURL = process.env.BASE_URL ?? `http://127.0.0.1:${port}`;
const mcpResource = process.env.MCP_RESOURCE ?? "http://127.0.0.1:8000/mcp";
const sseResource = process.env.SSE_RESOURCE ?? mcpResource.replace(/\/mcp$/, "/sse");
// Each todo-ledger transport is a resource of its own; a token's `aud` is the one it was asked for.
const resources = [...new Set([mcpResource, sseResource])];

const options = {
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET ?? "todo-ledger-example-secret-not-for-production",
  emailAndPassword: { enabled: true },
  plugins: [
    // Signs access tokens as JWTs (EdDSA; public keys at /api/auth/jwks, what todo-ledger reads)
    // and serves GET /api/auth/token, the JWT a web app hands its own backend.
    jwt(),
    oauthProvider({
      loginPage: "/login",
      consentPage: "/consent",
      // offline_access: clients that ask for it get refresh tokens.
      scopes: ["openid", "profile", "email", "offline_access", "todo:read", "todo:write"],
      // RFC 8707: without these, /authorize answers invalid_target.
      resources,
      clientRegistrationDefaultResources: resources,
      // MCP clients register themselves (RFC 7591 dynamic client registration).
      allowDynamicClientRegistration: true,
      allowUnauthenticatedClientRegistration: true,
    }),
  ],
};

if (process.env.DATABASE_URL) {
  const { default: pg } = await import("pg");
  options.database = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  const { runMigrations } = await getMigrations(options);
  await runMigrations();
} else {
  // The memory adapter needs every table to exist, empty.
  const tables = Object.values(getAuthTables(options)).map((table) => [table.modelName, []]);
  options.database = memoryAdapter(Object.fromEntries(tables));
}

const auth = betterAuth(options);
const authHandler = toNodeHandler(auth);

const loginPage = `<!doctype html>
<title>Sign in</title>
<form id="form">
  <input name="email" type="email" placeholder="email" required>
  <input name="password" type="password" placeholder="password" required>
  <button>Sign in</button>
</form>
<script>
  // The signed query of this page lets Better Auth continue the authorization after sign-in.
  document.getElementById("form").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch("/api/auth/sign-in/email", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        email: form.get("email"),
        password: form.get("password"),
        oauth_query: location.search.slice(1),
      }),
    });
    const body = await response.json();
    if (body.url) location.href = body.url; else alert(body.message ?? "sign-in failed");
  };
</script>`;

// Approves at once, as a consent page's "Allow" button would: the signed query goes back to
// Better Auth with the user's session cookie (and an Origin, which Better Auth requires).
async function consent(req, res) {
  const response = await auth.handler(new Request(`${baseURL}/api/auth/oauth2/consent`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      cookie: req.headers.cookie ?? "",
      origin: new URL(baseURL).origin,
    },
    body: JSON.stringify({ accept: true, oauth_query: new URL(req.url, baseURL).search.slice(1) }),
  }));
  const body = await response.json(); // {"redirect": true, "url": "<redirect_uri>?code=...&state=..."}
  if (response.ok && body.url) {
    res.writeHead(302, { location: body.url }).end();
  } else {
    res.writeHead(response.status, { "content-type": "application/json" }).end(JSON.stringify(body));
  }
}

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, baseURL);
  if (pathname.startsWith("/api/auth/") || pathname.startsWith("/.well-known/")) return authHandler(req, res);
  if (pathname === "/login") return res.writeHead(200, { "content-type": "text/html" }).end(loginPage);
  if (pathname === "/consent") return consent(req, res);
  res.writeHead(404).end();
});

server.listen(port, "127.0.0.1", () => {
  console.log(`Better Auth at ${baseURL} (issuer ${baseURL}/api/auth) for ${resources.join(" and ")}`);
});
