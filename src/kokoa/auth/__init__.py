"""Sign-in: sessions, second factors, single sign-on, one-time codes, rate limits."""
