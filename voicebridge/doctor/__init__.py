"""``voicebridge doctor``: check a deployment end to end, then print the Twilio console settings.

Checks, in order, each printed as one line (``[ ok ]``, ``[FAIL] … — fix: …`` or ``[warn]``):

1. the settings load (as ``voicebridge serve`` reads them: the environment over ``.env``);
   :mod:`.settings`;
2. ``PUBLIC_URL`` is an ``https://`` base (not ``wss://``, not ``http://``); :mod:`.public_url`;
3. the webhook: ``POST PUBLIC_URL/twilio/stream`` as Twilio would (signed with
   ``TWILIO_AUTH_TOKEN`` when set) answers TwiML whose ``<Stream url>`` is
   ``wss://HOST/realtime`` with a ``StreamToken``; ``PUBLIC_URL/twilio/fallback`` answers
   TwiML; with a token, an unsigned request is refused; a failure or busy answer says which
   setting to fix; :mod:`.webhook`;
4. the stream that answer names, through the public URL as Twilio opens it: the WebSocket
   upgrade (signed), ``start`` with a ``StreamToken`` minted with ``STREAM_TOKEN_SECRET`` here
   (so a secret the service does not share is caught), the service's upstream answering a
   keypad digit, then ``stop``; :mod:`.stream`;
5. the upstream accepts the key: the handshake, then the bridge's own ``session.update``
   confirmed by ``session.updated`` with the asked audio formats; :mod:`.upstream`;
6. ``STREAM_TOKEN_SECRET`` and ``TWILIO_AUTH_TOKEN`` are set, ``TWILIO_ACCOUNT_SID`` valid if set;
   :mod:`.credentials`;
7. the profiles per number and HTTP tools load, listed with their numbers, voice,
   language and tools; where call events go; :mod:`.business`.

Then it prints what to paste into the Twilio console (:mod:`.console`). Every network wait is
bounded by ``--timeout``. Exit status: 0 when every check passed, 1 when any failed, 2 for bad
arguments. :mod:`.command` runs them in this order; :mod:`.report` prints the lines.

The webhook check reserves a call slot on the service for a made-up CallSid
(``CAd0c7d0c7…``); the stream check then places that call (one short answer from the model)
and frees the slot, or the slot is held until its stream token expires (``STREAM_TOKEN_TTL_S``).
"""
