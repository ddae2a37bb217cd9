"""Face data: synthetic identities, folders of identities (LFW), landmarks, batch sampling."""
