// A new Standard Webhooks signing key (whsec_<base64>), as deploy generates them; run alone, prints one
// (`npm run gen-secret`, for ORIGIN_SIGNING_SECRET or a destination's).
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";

export const signingSecret = () => `whsec_${randomBytes(32).toString("base64")}`;

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(signingSecret());
