# syntax=docker/dockerfile:1
# hooky: Debian bookworm (glibc 2.36; uWebSockets.js needs >= 2.27) with Node.js 20.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The compiler's native binary is an optional dependency, so the build stage installs them all.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies are left out: the image uses DATABASE_URL, not embedded PostgreSQL.
# uWebSockets.js ships binaries for every platform and Node ABI; keep Linux on Node 20 (ABI 115).
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force \
 && find node_modules/uWebSockets.js -name 'uws_*.node' ! -name 'uws_linux_*_115.node' -delete
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/page ./dist/page
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node is PID 1 and handles SIGTERM itself: the shutdown drains captures before it exits.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
