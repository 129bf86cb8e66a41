// The SPA sample: signs in with MSAL.js, calls the middle tier with the user's token, and
// answers the middle tier's claims challenge (MFA) by signing in again with those claims.
// Settings come from config.json (samples/spa_server.py): authority, clientId, apiScope, apiUrl.
"use strict";

const RETRY_KEY = "flask-obo-sample.retry-call";
const $ = (id) => document.getElementById(id);
let app;
let config;

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

// A sentence a person can act on, for the errors this sample meets.
function explain(error) {
  const code = error.errorCode || error.name || "error";
  const message = String(error.errorMessage || error.message || error).split(" Trace ID:")[0];
  if (code === "consent_required" && message.includes("AADSTS65004")) {
    return "You declined the permissions this app asked for, so it cannot call the API on "
      + "your behalf. Sign in again and choose Accept to continue. (" + message + ")";
  }
  if (code === "endpoints_resolution_error" || code === "no_network_connectivity") {
    return "Cannot reach the identity provider at " + (config || {}).authority + ". If your browser "
      + "does not trust the Entra emulator's certificate yet, open that address once, accept "
      + "the warning, and reload this page.";
  }
  return "Sign-in failed: " + code + ": " + message;
}

function render() {
  const account = app.getActiveAccount();
  $("signedOut").hidden = Boolean(account);
  $("signedIn").hidden = !account;
  if (account) {
    $("account").textContent = account.username;
    $("accountOid").textContent = (account.idTokenClaims || {}).oid || account.localAccountId;
  }
}

function showResult(saw) {
  $("downstreamOid").textContent = saw.oid;
  $("downstreamName").textContent = saw.name || "";
  $("downstreamAzp").textContent = saw.azp || "";
  $("downstreamScp").textContent = (saw.scp || []).join(" ");
  $("downstreamAmr").textContent = (saw.amr || []).join(", ");
  $("result").hidden = false;
}

// WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64 JSON>" -> the JSON.
function claimsFromChallenge(header) {
  if (!header || !/^Bearer\b/i.test(header)) {
    return null;
  }
  const params = {};
  for (const match of header.matchAll(/(\w+)="([^"]*)"/g)) {
    params[match[1]] = match[2];
  }
  if (params.error !== "insufficient_claims" || !params.claims) {
    return null;
  }
  return atob(params.claims);
}

function tokenRequest(extra) {
  return Object.assign({ scopes: [config.apiScope], account: app.getActiveAccount() }, extra);
}

async function accessToken() {
  try {
    const silent = await app.acquireTokenSilent(
      tokenRequest({ redirectUri: location.origin + "/redirect.html" }));
    return silent.accessToken;
  } catch (error) {
    if (error instanceof msal.InteractionRequiredAuthError) {
      sessionStorage.setItem(RETRY_KEY, "1");
      await app.acquireTokenRedirect(tokenRequest());
      return null;
    }
    throw error;
  }
}

async function callApi(token) {
  showError("");
  setStatus("Calling the API...");
  token = token || await accessToken();
  if (!token) {
    return;  // on the way to the sign-in page
  }
  const response = await fetch(config.apiUrl + "/api/profile", {
    headers: { Authorization: "Bearer " + token },
  });
  if (response.status === 401) {
    const claims = claimsFromChallenge(response.headers.get("WWW-Authenticate"));
    if (claims) {
      // The downstream API needs more (MFA): sign in again asking for exactly that.
      setStatus("The API asks for more verification; signing in again...");
      sessionStorage.setItem(RETRY_KEY, "1");
      await app.acquireTokenRedirect(tokenRequest({ claims }));
      return;
    }
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    setStatus("");
    showError("The API answered " + response.status + ": " + JSON.stringify(body));
    return;
  }
  showResult(body.downstream_saw);
  setStatus("The API answered 200.");
}

async function run(action) {
  try {
    await action();
  } catch (error) {
    setStatus("");
    showError(explain(error));
  }
}

async function main() {
  config = await (await fetch("config.json")).json();
  app = new msal.PublicClientApplication({
    auth: {
      clientId: config.clientId,
      authority: config.authority,
      // Not a Microsoft cloud: trust the authority's own metadata, skip instance discovery.
      knownAuthorities: [new URL(config.authority).host],
      redirectUri: location.origin + "/",
      postLogoutRedirectUri: location.origin + "/",
    },
    cache: { cacheLocation: "sessionStorage" },
  });
  await app.initialize();
  let result = null;
  try {
    result = await app.handleRedirectPromise();
  } catch (error) {
    sessionStorage.removeItem(RETRY_KEY);
    showError(explain(error));
  }
  const accounts = app.getAllAccounts();
  if (result && result.account) {
    app.setActiveAccount(result.account);
  } else if (!app.getActiveAccount() && accounts.length > 0) {
    app.setActiveAccount(accounts[0]);
  }
  render();
  $("signIn").onclick = () => run(() => app.loginRedirect({ scopes: [config.apiScope] }));
  $("signOut").onclick = () => run(() => app.logoutRedirect({ account: app.getActiveAccount() }));
  $("callApi").onclick = () => run(() => callApi());
  if (result && sessionStorage.getItem(RETRY_KEY)) {
    sessionStorage.removeItem(RETRY_KEY);
    await run(() => callApi(result.accessToken));
  } else if (result) {
    setStatus("Signed in.");
  }
  document.body.dataset.ready = "true";
}

main().catch((error) => showError(explain(error)));
