// Prints a new Standard Webhooks signing key for ORIGIN_SIGNING_SECRET.
import { randomBytes } from "node:crypto";
console.log("whsec_" + randomBytes(32).toString("base64"));
