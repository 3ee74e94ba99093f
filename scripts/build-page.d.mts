export declare const PAGE_PROTOCOL_OUT: string;
export declare function buildPageProtocol(outFile?: string): Promise<{ outFile: string; inputs: string[] }>;
export declare function setup(): Promise<void>;
