// The OAuth2 token server of the ambassador's end-to-end tests: oauth2-mock-server, with its
// token responses shaped by the environment:
//   EXPECT_CLIENT_SECRET  the client secret to accept; any other gets 401 invalid_client
//   EXPIRES_IN            token lifetime in seconds (default 3600)
//   EXPIRES_AS_STRING=1   send expires_in as a string, as some providers do
//   PORT                  port to listen on (default: any free one)
// Prints "listening <url>" once ready, then "token-request <n> <status> <unix ms>" per token
// request, so a test can count and time them.
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
let n = 0;
// Tokens signed in the same second would be identical: a unique id tells them apart, so a
// test can revoke one token and see a different one fetched.
server.service.on('beforeTokenSigning', (token) => {
  token.payload.jti = `${process.pid}-${n}-${Math.random().toString(36).slice(2)}`;
});
server.service.on('beforeResponse', (resp, req) => {
  n += 1;
  const expected = process.env.EXPECT_CLIENT_SECRET;
  let secret = req.body && req.body.client_secret;
  const auth = req.headers.authorization || '';
  if (auth.startsWith('Basic ')) {
    const pair = Buffer.from(auth.slice(6), 'base64').toString();
    secret = decodeURIComponent(pair.slice(pair.indexOf(':') + 1));
  }
  if (expected !== undefined && secret !== expected) {
    resp.statusCode = 401;
    resp.body = { error: 'invalid_client', error_description: 'client authentication failed' };
  } else {
    const lifetime = Number(process.env.EXPIRES_IN || 3600);
    resp.body.expires_in = process.env.EXPIRES_AS_STRING === '1' ? String(lifetime) : lifetime;
  }
  console.log(`token-request ${n} ${resp.statusCode} ${Date.now()}`);
});
await server.start(Number(process.env.PORT || 0), '127.0.0.1');
console.log(`listening ${server.issuer.url}`);
