// The redirect bridge of MSAL.js v5: passes a silent or popup sign-in's response to the app.
msalRedirectBridge.broadcastResponseToMainFrame().catch((error) => {
  document.body.textContent = `Sign-in response could not be handed to the app: ${error}`;
});
