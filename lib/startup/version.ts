/** The gateway's version, shown by the start-up banner and `GET /`. Bump it with each release. */
export const VERSION = "0.1.0";
