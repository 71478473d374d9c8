# Dovecot (Pigeonhole Sieve): mail already delivered to a Dovecot account (here info@acme.example) goes on to
# ticketd. Put this in the account's active Sieve script; the helpdesk address is routed to ticketd over LMTP
# by the MTA (deploy/postfix/), so the redirected mail arrives there with the envelope recipient ticketd accepts.
# The original headers (From, To, Message-ID) are kept: ticketd answers the customer, not info@.
require ["copy"];
# :copy keeps a copy in info@'s own INBOX; leave it out to hand the mail over only.
redirect :copy "support@acme.example";
