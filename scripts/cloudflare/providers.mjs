// Each source's side of the connection: the secret mailhook needs from it (if any), and the exact steps to take in
// the provider's own console, with mailhook's values filled in. `npm run deploy` asks for the secrets; `npm run
// mailhook -- connect NAME` prints the steps (Mailtura's are done through its API instead).

/** `url`: mailhook's public URL, without a trailing slash. */
export const PROVIDERS = [
  {
    name: "mailtura",
    secret: "MAILTURA_WEBHOOK_SECRET",
    hint: "the webhook's signing secret",
    steps: (url) => [
      "Run `npm run mailhook -- connect mailtura --api https://<your Mailtura instance> --key <API key> --tenant <tenant id>`, which does all of this; or by hand:",
      `Create the webhook (POST /api/v1/webhooks, or in Mailtura's UI) with "url": "${url}/webhooks/mailtura", the events you want, and a "secret" (npm run gen-secret makes one).`,
      "Run `npx wrangler secret put MAILTURA_WEBHOOK_SECRET` and paste the same secret.",
      'Send the test event: POST /api/v1/webhooks/{id}/test with {"eventType": "email.delivered"}.',
    ],
  },
  {
    name: "maileroo",
    secret: "MAILEROO_WEBHOOK_SECRET",
    hint: "the secret key shown in Maileroo's dashboard, Events section",
    steps: (url) => [
      `In Maileroo's dashboard, Events section, add the callback URL ${url}/webhooks/maileroo.`,
      "Run `npx wrangler secret put MAILEROO_WEBHOOK_SECRET` and paste the secret key shown there.",
      "Send a message through Maileroo: its `accepted` event arrives as email.queued.",
    ],
  },
  {
    name: "improvmx",
    secret: null,
    steps: (url) => [
      `In the ImprovMX console, add ${url}/webhooks/improvmx as a forward destination of an alias (or a rule).`,
      "Nothing to set in mailhook: IMPROVMX_ALLOWED_IPS is ImprovMX's documented address 15.237.103.194.",
      "Press the alias's TEST button: it arrives as email.received.",
    ],
  },
  {
    name: "mail-plus",
    secret: null,
    steps: (url) => [
      `In the Mail-Plus client area, set the webhook URL to ${url}/webhooks/mail-plus and select the fields you want.`,
      'Requests are verified by reverse DNS (MAIL_PLUS_VERIFY = "rdns"); to use the client area\'s IP list instead, set MAIL_PLUS_VERIFY = "ip" and MAIL_PLUS_ALLOWED_IPS in wrangler.toml and run npm run deploy.',
      "Send a message to a Mail-Plus mailbox: it arrives as email.received.",
    ],
  },
  {
    name: "adm-tools",
    secret: "ADM_TOOLS_WEBHOOK_TOKEN",
    hint: "the Token column of adm.tools' Webhooks list",
    steps: (url) => [
      `In adm.tools, Webhooks, Create webhook: choose the mailboxes and events, and set the URL to ${url}/webhooks/adm-tools.`,
      "Run `npx wrangler secret put ADM_TOOLS_WEBHOOK_TOKEN` and paste the value of the Token column.",
      `adm.tools checks ${url}/webhook-confirm.txt: set ADM_TOOLS_ACCOUNT_ID in wrangler.toml [vars] to your account id and run npm run deploy.`,
      "Send a message to one of the mailboxes: it arrives as email.received.",
    ],
  },
  {
    name: "email-routing",
    secret: null,
    route: false,
    steps: () => [
      "In the Cloudflare dashboard, your domain, Email, Email Routing: enable it, then under Routing rules create an address (or the catch-all) with the action Send to a Worker, and choose mailhook.",
      "Send a message to that address: it arrives as email.received.",
    ],
  },
];

export const provider = (name) => PROVIDERS.find((p) => p.name === name);
