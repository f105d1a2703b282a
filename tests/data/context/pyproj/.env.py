API_TOKEN = "never in context"
