"""Identity: doctor face enrollment and verification with liveness, continuous assurance, and the
doctor registry admin API (issue 3); guardians on camera in pediatric consultations (issue 4).
server/node.py builds the services and server/app.py adds the routes."""
