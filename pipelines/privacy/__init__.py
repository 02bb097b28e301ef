"""Personal data kept from AI providers: typed placeholders in, the case's own values back out."""
