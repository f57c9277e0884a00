"""Return policies as data: the document, the legal floors and the engine. Pure."""
