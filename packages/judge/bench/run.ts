// `npm run bench`: the fault run (see fault-run.ts).
import "./fault-run";
