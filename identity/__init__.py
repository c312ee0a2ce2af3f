"""Identity: doctor face enrollment and verification with liveness, continuous assurance, and the
doctor registry admin API (issue 3); guardians on camera in pediatric consultations (issue 4).
Three folders: faces/ (analysis both checks use), doctor/ and guardian/ (the two checks, which
know nothing of each other). server/node.py builds the services, server/app.py adds the routes."""
