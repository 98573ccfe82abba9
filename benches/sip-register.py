#!/usr/bin/env python3
"""Registers a contact for a user at a SIP server over UDP and checks the 200 (the bench
scripts use it for SIPp's UAS). Usage: sip-register.py SERVER_PORT USER CONTACT_HOST:PORT
(server and user domain: 127.0.0.1 and localhost). Each call is a new registration (its own
Call-ID and branch), so a rerun is never refused as stale."""
import socket
import sys
import time

port, user, contact = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(5)
local = "%s:%d" % s.getsockname()
tag = time.time_ns()
req = (f"REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg{tag};rport\r\n"
       f"Max-Forwards: 70\r\nTo: <sip:{user}@localhost>\r\nFrom: <sip:{user}@localhost>;tag=r{tag}\r\n"
       f"Call-ID: reg-{tag}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{contact}>\r\n"
       "Expires: 3600\r\nContent-Length: 0\r\n\r\n").encode()
s.sendto(req, ("127.0.0.1", port))
answer = s.recv(4096)
if not answer.startswith(b"SIP/2.0 200 "):
    sys.exit(f"REGISTER of {user} refused: {answer[:80]!r}")
